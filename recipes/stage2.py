"""MedSSR stage 2 (supervised GRPO on gold answers):

    # on CPU, the 135M embedded model
    accelerate launch --num_processes 1 recipes/stage2.py --config recipes/smollm2/stage2.yaml
    # an 8B model on one 8-GPU node
    accelerate launch --config_file recipes/accelerate_configs/zero2.yaml recipes/stage2.py \\
        --config recipes/qwen3-8b-base/stage2.yaml

An 8B full fine-tune needs the DeepSpeed `--config_file`: without one accelerate runs DDP, where every GPU
holds fp32 weights, gradients and AdamW state (16 bytes a parameter, about 122 GiB for 8B), and the launch
is refused before the model loads (`check_memory`). The recipe's header names its launch and layout.

Thin launcher, the same as `medssr-hub stage2 --config FILE.yaml [--field value ...]`: the logic lives in
`medssr_hub`. Any field of the config can be overridden on the command line; `--help` lists them.
"""

import sys

from medssr_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["stage2", *sys.argv[1:]]))
