"""Open an exported face GLB in Blender, headless, and render one frame to PNG: does a real 3D tool read it?

    blender -b --python scripts/render_glb_in_blender.py -- FACE.glb OUT.png [--size 384] [--yaw 0]

Blender's glTF importer turns glTF's +y up into its +z up, so a face looking down glTF's +z looks down
Blender's -y; the camera sits on -y looking back at it, orbited about the vertical axis so that the head looks
turned by --yaw degrees (+ = towards the picture's right, as uvlib's turntable). Cycles on the CPU (Eevee and
Workbench need a display).
Prints the imported mesh's vertex, face and UV-layer counts and the material's image size.

Debian's Blender 3.4.1 glTF importer still uses np.bool, gone since numpy 1.24 (Debian 12 ships 1.24): the
alias is put back for the importer before it runs.
"""
import argparse
import math
import sys

import bpy
import numpy
from mathutils import Vector

if not hasattr(numpy, "bool"):
    numpy.bool = bool

parser = argparse.ArgumentParser(prog="render_glb_in_blender.py")
parser.add_argument("glb")
parser.add_argument("png")
parser.add_argument("--size", type=int, default=384)
parser.add_argument("--yaw", type=float, default=0.0)
args = parser.parse_args(sys.argv[sys.argv.index("--") + 1:])

bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=args.glb)
face = next(o for o in bpy.context.scene.objects if o.type == "MESH")
mesh = face.data
images = [n.image for m in mesh.materials for n in m.node_tree.nodes if n.type == "TEX_IMAGE"]
print(f"imported {face.name}: {len(mesh.vertices)} vertices, {len(mesh.polygons)} faces, "
      f"{len(mesh.uv_layers)} UV layer(s), textures {[tuple(i.size) for i in images]}")

corners = [face.matrix_world @ Vector(c) for c in face.bound_box]
centre = sum(corners, Vector()) / 8
extent = max((max(c[k] for c in corners) - min(c[k] for c in corners)) for k in range(3))

scene = bpy.context.scene
camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
camera.data.lens = 85
orbit = math.radians(-args.yaw)
camera.location = centre + 2.6 * extent * Vector((math.sin(orbit), -math.cos(orbit), 0.0))
camera.rotation_euler = (math.pi / 2, 0.0, orbit)   # look at the centre, level
scene.collection.objects.link(camera)
scene.camera = camera
light = bpy.data.objects.new("sun", bpy.data.lights.new("sun", type="SUN"))
light.data.energy = 2.5
light.rotation_euler = (1.2, 0.3, -0.4)             # from the front, above and to the right
scene.collection.objects.link(light)
scene.world = bpy.data.worlds.new("world")
scene.world.color = (0.45, 0.45, 0.45)
scene.view_settings.view_transform = "Standard"     # the texture's colours as they are, not Filmic's

scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 32
scene.cycles.use_denoising = False            # Debian builds Blender without OpenImageDenoise
scene.render.resolution_x = scene.render.resolution_y = args.size
scene.render.film_transparent = False
scene.render.image_settings.file_format = "PNG"
scene.render.filepath = args.png
bpy.ops.render.render(write_still=True)
print(f"rendered {args.png}")
