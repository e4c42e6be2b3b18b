"""What the notebooks share: checked profiles (params), a stage's context (context), training recipes built
from specs (recipes), each stage's training as a function of its parameters (stages, used by the notebooks and
`uvlib train` alike), the run_all.sh runner (runner) and the 3D figures of the results notebook (faces3d)."""
