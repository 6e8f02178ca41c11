"""Generate an image with Lumina-Image-2.0 on MindSpore (the same as `mindone-lumina2`).

    python examples/generate.py                                   # the bundled tiny pipeline, offline, seconds on CPU
    python examples/generate.py --model Alpha-VLLM/Lumina-Image-2.0 --dtype bfloat16 --device Ascend \
        --prompt "a cat in a spacesuit" --steps 30 --output cat.png

See `python examples/generate.py --help` for every option.
"""

import sys

from mindone.diffusers.pipelines.lumina2.demo import main

if __name__ == "__main__":
    main(sys.argv[1:])
