"""Which raw column feeds which field of a prepared row.

VQA-Verify's exact schema is not documented (it is very likely a Visual-CoT subset, whose
fields are `question`, `answer`, `image`, `bboxs`, `width`, `height`, `dataset`, `split`),
so each field is looked up under its usual names, in order, and the user can point any
field at another column with `--column field=column`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from satori_cli.errors import SatoriError

# field -> raw column names tried in order (the first present and non-null one wins)
ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "question_id", "qid", "uid", "sample_id"),
    "question": ("question", "query", "problem", "prompt", "instruction"),
    "answer": ("possible_answers", "answers", "answer", "solution", "response", "label"),
    "image": ("images", "image", "image_path", "img", "image_bytes", "file_name", "filename"),
    "bboxs": ("bboxs", "bboxes", "bbox", "boxes", "box"),
    "width": ("width", "image_width", "w"),
    "height": ("height", "image_height", "h"),
    "caption": ("image_caption", "caption", "captions"),
    "source": ("source", "dataset", "data_source"),
    "messages": ("messages", "conversations"),
}
FIELDS = tuple(ALIASES)
# --column also accepts a field under its name in a prepared row
PREPARED_NAMES = {
    "image_caption": "caption",
    "possible_answers": "answer",
    "answers": "answer",
    "images": "image",
}


def parse_mapping(items: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """Turn `["question=prompt_text", ...]` (or a dict) into {field: column}, checking the fields."""
    if not items:
        return {}
    pairs = items.items() if isinstance(items, Mapping) else (_split(item) for item in items)
    mapping: dict[str, str] = {}
    for field, column in pairs:
        field = PREPARED_NAMES.get(field, field)
        if field not in ALIASES:
            raise SatoriError(
                f"unknown field '{field}' in --column",
                hint=f"fields are: {', '.join(FIELDS)}",
            )
        if not column:
            raise SatoriError(f"empty column name for field '{field}' in --column")
        mapping[field] = column
    return mapping


def _split(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise SatoriError(
            f"--column expects FIELD=COLUMN, got '{item}'", hint="e.g. --column question=prompt"
        )
    field, column = item.split("=", 1)
    return field.strip(), column.strip()


def check_mapping(mapping: Mapping[str, str], columns: Iterable[str], where: str) -> None:
    """Fail early (one line) when a user-mapped column is absent from the data."""
    present = set(columns)
    missing = [f"{field}={column}" for field, column in mapping.items() if column not in present]
    if missing:
        raise SatoriError(
            f"--column {', '.join(missing)}: no such column in {where}",
            hint=f"columns there: {', '.join(sorted(present)) or '(none)'}",
        )


def pick(record: Mapping[str, object], mapping: Mapping[str, str]) -> dict[str, object]:
    """The raw value of every field for one record (None where nothing matches)."""
    out = {
        field: next((record[name] for name in names if record.get(name) is not None), None)
        for field, names in ALIASES.items()
    }
    out.update((field, record.get(column)) for field, column in mapping.items())
    return out
