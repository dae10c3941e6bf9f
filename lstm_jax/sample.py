"""`lstm-jax-sample`: generate text from a trained language-model run.

    lstm-jax-sample RUN_DIR [prompt=TEXT] [length=500] [temperature=0.8] [top_k=K]
                    [seed=0] [which=best|last]

Loads the run's `best` (default) or `last` checkpoint with the config it was trained with,
feeds the prompt through the model (its state carried, as in training) and samples `length`
tokens (characters or words), each from softmax(logits / temperature) (temperature 0: the
most likely token; top_k: only the k most likely). Prints the prompt followed by the sample.
In the prompt, `\\n` stands for a newline.
"""

from __future__ import annotations

import math
import sys

USAGE = __doc__.split("\n\n")[1]
_KEYS = {"prompt", "length", "temperature", "top_k", "seed", "which"}


def parse_args(argv: list[str]) -> tuple[str, dict]:
    if not argv or argv[0] in ("-h", "--help"):
        raise SystemExit(__doc__)
    run_dir, opts = (
        argv[0],
        {
            "prompt": "",
            "length": 500,
            "temperature": 0.8,
            "top_k": None,
            "seed": 0,
            "which": "best",
        },
    )
    for arg in argv[1:]:
        key, sep, value = arg.partition("=")
        key = key.lstrip("-")
        if not sep or key not in _KEYS:
            raise SystemExit(f"lstm-jax-sample: error: unknown argument {arg!r}\nusage:{USAGE}")
        try:
            if key == "prompt":
                opts[key] = value.replace("\\n", "\n").replace("\\t", "\t")
            elif key in ("length", "seed"):
                opts[key] = int(value)
            elif key == "top_k":
                opts[key] = None if value.lower() in ("", "none", "null") else int(value)
            elif key == "temperature":
                opts[key] = float(value)
            else:
                if value not in ("best", "last"):
                    raise ValueError("choose best or last")
                opts[key] = value
        except ValueError as e:
            raise SystemExit(f"lstm-jax-sample: error: {key}={value!r}: {e}") from None
    if opts["length"] < 1:
        raise SystemExit("lstm-jax-sample: error: length must be at least 1")
    temperature = opts["temperature"]
    if not math.isfinite(temperature) or temperature < 0:
        raise SystemExit(
            f"lstm-jax-sample: error: temperature={temperature}: must be a finite number >= 0 "
            "(0: the most likely token; 1: the model's own distribution)"
        )
    if opts["top_k"] is not None and opts["top_k"] < 1:
        raise SystemExit(
            f"lstm-jax-sample: error: top_k={opts['top_k']}: must be at least 1 (or none for "
            "every token)"
        )
    return run_dir, opts


def sample(run_dir: str, **opts) -> str:
    """The text generated from the run in `run_dir` (see the module doc for the options)."""
    from lstm_jax.train.run import load_run

    which = opts.pop("which", "best")
    _, task, model = load_run(run_dir, which=which)
    if not hasattr(task, "generate"):
        raise ValueError(
            f"the run in {run_dir} trained {type(task).__name__}, not a language model: "
            "lstm-jax-sample needs a char_lm or word_lm run"
        )
    return task.generate(model, opts.pop("prompt", ""), opts.pop("length", 500), **opts)


def main(argv: list[str] | None = None) -> None:
    run_dir, opts = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        text = sample(run_dir, **opts)
    except (FileNotFoundError, ValueError, KeyError) as e:
        message = e.args[0] if e.args else repr(e)
        print(f"lstm-jax-sample: error: {message}", file=sys.stderr)
        raise SystemExit(1) from None
    print(text)


if __name__ == "__main__":
    main()
