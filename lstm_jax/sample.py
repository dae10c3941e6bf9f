"""`lstm-jax-sample`: generate text from a trained language-model run.

    lstm-jax-sample RUN_DIR [--prompt TEXT] [--length 500] [--temperature 0.8] [--top_k K]
                    [--seed 0] [--which best|last]          (or prompt=TEXT length=500 ...)

Loads the run's `best` (default) or `last` checkpoint with the config it was trained with,
feeds the prompt through the model (its state carried, as in training) and samples `length`
tokens (characters or words), each from softmax(logits / temperature) (temperature 0: the
most likely token; top_k: only the k most likely). Prints the prompt followed by the sample.
In the prompt, `\\n` stands for a newline.
"""

from __future__ import annotations

import argparse
import math
import sys

_TEMPERATURE = (
    "must be a finite number >= 0 (0: the most likely token; 1: the model's own distribution)"
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line naming the problem, and where the options are listed."""
        self.exit(2, f"{self.prog}: error: {message} (lstm-jax-sample --help lists the options)\n")


def _length(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"length={value}: must be at least 1")
    return value


def _temperature(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"temperature={text}: {_TEMPERATURE}")
    return value


def _top_k(text: str) -> int | None:
    if text.lower() in ("", "none", "null"):
        return None
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"top_k={value}: must be at least 1 (or none for every token)"
        )
    return value


def _prompt(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\t", "\t")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="lstm-jax-sample",
        description=__doc__.split("\n\n", 2)[2].strip(),
        epilog="Each option may also be given as KEY=VALUE, as in "
        "`lstm-jax-sample RUN_DIR prompt=ROMEO: length=200`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a char_lm or word_lm run dir")
    p.add_argument("--prompt", type=_prompt, default="", help="text fed first (\\n: newline)")
    p.add_argument("--length", type=_length, default=500, help="tokens to sample (500)")
    p.add_argument("--temperature", type=_temperature, default=0.8, help="0: greedy (0.8)")
    p.add_argument("--top_k", type=_top_k, default=None, help="only the k likeliest")
    p.add_argument("--seed", type=int, default=0, help="the sampling seed (0)")
    p.add_argument("--which", choices=("best", "last"), default="best", help="checkpoint")
    return p


_KEYS = ("prompt", "length", "temperature", "top_k", "seed", "which")


def parse_args(argv: list[str]) -> tuple[str, dict]:
    """(RUN_DIR, options) from argparse; `key=value` words are `--key=value`."""
    words = [f"--{w}" if w.partition("=")[0] in _KEYS and "=" in w else w for w in argv]
    args = vars(_parser().parse_args(words))
    return args.pop("run_dir"), args


def sample(run_dir: str, **opts) -> str:
    """The text generated from the run in `run_dir` (see the module doc for the options)."""
    from lstm_jax.run import load_run

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
