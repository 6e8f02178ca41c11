CONFIG_NAME = "config.json"
SAFETENSORS_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
WEIGHTS_NAME = "diffusion_pytorch_model.bin"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# The diffusers release whose behaviour and on-disk format this port follows; written into configs we save.
DIFFUSERS_REFERENCE_VERSION = "0.42.1"
