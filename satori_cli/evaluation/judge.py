"""The LLM judge of `satori eval`: check it before the run, and after it say who really scored.

VLMEvalKit asks an LLM judge to map an answer to an option letter only when its own
heuristic (`can_infer`) cannot. Left alone it is quietly lenient: a judge that fails its
`working()` probe is replaced by exact matching, and an item whose judge replies cannot be
read gets a *random* letter. satori checks the server up front (one line, exit 2); inside the
worker a failed probe fails the benchmark and an unreadable item scores as wrong (never a lucky
guess); afterwards VLMEvalKit's per-item match log says who scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from satori_cli.errors import SatoriError

EXACT = "exact_matching"
# VLMEvalKit's build_judge sends these names elsewhere, ignoring --judge-url.
ROUTED_ELSEWHERE = {
    "qwen-7b": "SiliconFlow's API",
    "qwen-72b": "SiliconFlow's API",
    "deepseek": "SiliconFlow's API",
    "llama31-8b": "a local Hugging Face model",
}
# Phrases VLMEvalKit writes in the `log` column of `<model>_<data>_<judge>_result.xlsx`.
FALLBACK_LOG = "no GPT-based answer matching under `exact_matching` policy"
GUESS_LOG = "Failed to predict, thus randomly generate one"
UNREADABLE = "unreadable, scored as wrong"  # the worker's log of an item the judge could not map


def check_judge(name: str, url: str | None, key: str | None, reach: bool = True) -> None:
    """Refuse, before any model runs, a judge that cannot work (SatoriError, exit 2).

    With `reach`, the server must answer `/models` and list the judge's name.
    """
    if name == EXACT:
        if url:
            raise SatoriError("--judge-url needs an LLM judge", hint="pass --judge NAME (the served name)")
        return
    if not url:
        raise SatoriError(
            f"the LLM judge '{name}' needs --judge-url (an OpenAI-compatible server)",
            hint="or keep the default --judge exact_matching",
        )
    if name in ROUTED_ELSEWHERE:
        raise SatoriError(
            f"VLMEvalKit sends the judge name '{name}' to {ROUTED_ELSEWHERE[name]}, not to --judge-url",
            hint="serve the judge under another name (vllm serve ... --served-model-name my-judge)",
        )
    if "/" in name:
        raise SatoriError(
            f"the judge name '{name}' contains '/', which VLMEvalKit puts into a file name",
            hint="serve the judge under a plain name (vllm serve ... --served-model-name my-judge)",
        )
    from satori_cli.http_client import check_api_key, check_base_url, served_models

    check_base_url(url)  # a dry run too: it makes no request that would find out
    check_api_key(key)
    if not reach:
        return

    try:
        offered = served_models(url, key or "EMPTY")
    except SatoriError as exc:
        raise SatoriError(
            f"the judge '{name}' is unreachable: {exc.message}",
            hint="start the judge server or fix --judge-url (it ends in /v1)",
        ) from exc
    if offered and name not in offered and not any(m.startswith(name + "-") for m in offered):
        raise SatoriError(
            f"the judge server at {url} does not serve '{name}' (it serves: {', '.join(offered[:8])})",
            hint=f"pass --judge {offered[0]}",
        )


@dataclass(frozen=True)
class Verdict:
    """Who scored one model on one benchmark, and how many items were guessed at random."""

    used: str  # the judge name, or "exact_matching"
    guessed: int = 0
    error: str | None = None


def result_file(pred_dir: Path, model: str, bench: str, judge: str) -> Path | None:
    """VLMEvalKit's per-item match file (`<model>_<data>_<judge>_result.xlsx`), if written."""
    exact = pred_dir / f"{model}_{bench}_{judge}_result.xlsx"
    if exact.is_file():
        return exact
    found = [p for p in pred_dir.glob(f"{model}_{bench}_*_result.xlsx") if "_vanilla" not in p.name]
    return found[0] if len(found) == 1 else None


def verdict(pred_dir: Path, model: str, bench: str, judge: str) -> Verdict:
    """Read the match log: did `judge` score, or did VLMEvalKit fall back or give up on items?"""
    if judge == EXACT:
        return Verdict(EXACT)
    path = result_file(pred_dir, model, bench, judge)
    if path is None:
        return Verdict(judge)  # not an MCQ result (or nothing scored): nothing says otherwise
    try:
        import pandas as pd

        table = pd.read_excel(path)
    except Exception as exc:  # pandas and openpyxl raise many types for a broken file
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return Verdict(judge, error=f"cannot read the judge's match log {path}: {reason}")
    if "log" not in table:
        return Verdict(judge)  # a benchmark whose result keeps no match log: nothing says otherwise
    logs = table["log"].astype(str)
    if logs.str.contains(FALLBACK_LOG, regex=False).any():
        return Verdict(EXACT, error=f"VLMEvalKit scored with exact matching, not the judge '{judge}'")
    guessed = int(logs.str.contains(GUESS_LOG, regex=False).sum())
    if guessed:
        return Verdict(
            judge,
            guessed,
            f"the judge '{judge}' gave no readable letter for {guessed} item(s) ({UNREADABLE})",
        )
    return Verdict(judge)


def strict_judge() -> None:
    """In the worker: an LLM judge that fails its probe fails the benchmark; an item it cannot
    map scores wrong (VLMEvalKit's random letter becomes "Z").

    VLMEvalKit would instead score with exact matching (after 5 x retry probes) and give items
    the judge could not map a random letter, both silently. One probe (with VLMEvalKit's own
    retries) is enough to tell a dead judge.
    """
    from vlmeval.api.base import BaseAPI
    from vlmeval.dataset.utils import multiple_choice

    def working(self: BaseAPI) -> bool:
        reply = self.generate("hello")
        if reply and self.fail_msg not in str(reply):
            return True
        where = getattr(self, "api_base", type(self).__name__)
        raise RuntimeError(
            f"the judge '{getattr(self, 'model', '?')}' at {where} did not answer VLMEvalKit's probe "
            "(satori does not fall back to exact matching)"
        )

    extract = multiple_choice.extract_answer_from_item

    def extract_answer_from_item(model: Any, item: Any, dataset_name: str | None = None) -> dict:
        result = extract(model, item, dataset_name=dataset_name)
        if GUESS_LOG in str(result.get("log", "")):
            return {"opt": "Z", "log": f"{GUESS_LOG} ({UNREADABLE})"}
        return result

    BaseAPI.working = working
    multiple_choice.extract_answer_from_item = extract_answer_from_item
