"""How completions are scored: hole masks (holes), the fixed test cases (cases), metrics, the classical
baselines, the real cross-pose test, results tables and run folders (report, runs) and figures."""
