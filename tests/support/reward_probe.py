"""A reward function for tests, named by dotted path in a launched training (`--reward_funcs
tests.support.reward_probe.record_completions`): it appends every completion it is handed, as the rewards read it,
to the JSONL file named by $MEDSSR_TEST_COMPLETIONS, and rewards nothing."""

import json
import os


def record_completions(completions, **_) -> list[float]:
    with open(os.environ["MEDSSR_TEST_COMPLETIONS"], "a") as f:
        for completion in completions:
            f.write(json.dumps(completion) + "\n")
    return [0.0] * len(completions)
