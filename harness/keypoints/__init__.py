"""Keypoints: value types and their JSON files, sources (registered, recipes, stored sets), one
reference image -> every image by dense feature matching, PCK and pictures."""
