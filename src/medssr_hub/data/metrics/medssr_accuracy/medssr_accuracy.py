"""MedSSR accuracy: multiple-choice accuracy of free-text chain-of-thought answers, read as the MedSSR
evaluation reads them. `evaluate.load(<this folder>)` (config `official`, the default) or
`evaluate.load(<this folder>, "lenient")`; requires the `medssr-hub` package, whose rule it applies."""

import datasets
import evaluate

from medssr_hub.answers import Extraction
from medssr_hub.evaluation.sampling_metrics import sampling_metrics

_DESCRIPTION = """Accuracy of chain-of-thought answers to multiple-choice questions. Each prediction is a
model's generation; the letter it commits to is read by the configured rule (`official`: the MedSSR
evaluation script's rule; `lenient`: medssr-hub's wider rule, restricted to the offered letters) and
compared with the reference letter. Answers a second, constrained pass recovered are passed as
`recovered` (the metric itself runs no model)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: generations (strings).
    references: gold letters ("A", "B", ...).
    recovered: optional, one per prediction: the raw output of the recovery pass for a prediction the
        first pass could not read, else None.
    letters: optional, one per prediction: the offered letters ("ABCD"); the lenient rule reads only
        those (default: A-Z).
    path_string: optional: the model's path or id (the official script keys its Gemma form on it).
    model_type: optional: the model's `model_type` (`gemma3`, ...), for the family rule's Gemma form.
    recovery_rule: optional: `family` (default: families by model_type) or `script_path_string` (by
        path_string, as the official script).
    samples_per_item: optional, n: predictions are items' n samples in a row (item 1's n, then item 2's,
        ...; each with its item's reference), and maj@k and pass@k are returned for k = 1..n.
Returns:
    accuracy: share of predictions whose letter equals the reference.
    parsed: share read on the first pass.
    pass@k, maj@k (with samples_per_item): {k: mean over items} of the unbiased pass@k (at least one of
        k samples right) and of the majority of the first k samples being right.
Examples:
    >>> metric = evaluate.load("medssr_accuracy")
    >>> metric.compute(predictions=["... The answer is B.", "the answer is c"], references=["B", "D"])
    {'accuracy': 0.5, 'parsed': 1.0}
"""

_CITATION = """@article{medssr2026,
  title={Eliciting Medical Reasoning with Knowledge-enhanced Data Synthesis: A Semi-Supervised Reinforcement Learning Approach},
  journal={arXiv preprint arXiv:2604.11547},
  year={2026}
}"""

ALL_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MedssrAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://arxiv.org/abs/2604.11547", "https://github.com/tdlhl/MedSSR"],
        )

    @property
    def extraction_mode(self) -> str:
        return "lenient" if self.config_name == "lenient" else "official"

    def _compute(
        self,
        predictions,
        references,
        recovered=None,
        letters=None,
        path_string="",
        model_type=None,
        recovery_rule="family",
        samples_per_item=None,
    ):
        extraction = Extraction(self.extraction_mode, path_string or "", recovery_rule, model_type)
        recovered = recovered or [None] * len(predictions)
        letters = letters or [ALL_LETTERS] * len(predictions)
        correct = parsed = 0
        preds, golds = [], [str(gold).strip().upper() for gold in references]
        for text, gold, second, offered in zip(predictions, golds, recovered, letters, strict=True):
            pred = extraction.first_pass(text, list(offered))
            parsed += pred is not None
            if pred is None and second is not None:
                pred = extraction.read_recovered(second)
            correct += pred is not None and pred == gold
            preds.append(pred)
        n = max(1, len(predictions))
        out = {"accuracy": correct / n, "parsed": parsed / n}
        if samples_per_item:
            k = int(samples_per_item)
            if k < 1 or len(preds) % k:
                raise ValueError(f"samples_per_item={k}: {len(preds)} predictions are not whole items")
            items = range(0, len(preds), k)
            if any(len(set(golds[i : i + k])) > 1 for i in items):
                raise ValueError("samples_per_item: an item's samples have different references")
            out.update(sampling_metrics([preds[i : i + k] for i in items], [golds[i] for i in items]))
        return out
