"""Models: timm backbones (which weights apart from which architecture), the keypoint ViT wrapper
and the keypoint -> token mask step."""
