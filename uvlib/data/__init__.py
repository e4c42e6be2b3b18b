"""Stage 00: photos in, incomplete UV maps out. Finding photos and their groups (sources), reading them (photo),
fitting the face mesh (facefit, with the landmark model run on our own crops: landmarks), keeping occluders out of the seen texels (occluders), the prep job (prep) and
the dataset store it writes and every later stage reads (dataset), its maps as uint8 shards read lazily (shards)."""
