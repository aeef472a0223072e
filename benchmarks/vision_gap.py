"""Does a model read the image? SFT on gold SATORI completions, watching the "vision gap".

Every `--every` steps the held-out loss is measured twice: with the real images and with blank
(white) images of the same size. A gap near 0 means the model predicts the completion from the
question and the data's statistics alone. README "It learns" quotes what this measured on the
`make learn` miniature (no gap after 200 steps). A diagnostic, not the product's trainer: a plain
PyTorch loop (AdamW, warm-up + cosine, the loss on the completion only), so that one run is cheap
and its variants (a frozen or faster vision tower, no system prompt) are one flag each.

    python benchmarks/vision_gap.py --model MODEL_DIR --data PREPARED.jsonl [--steps 200]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from satori_cli.grammar import load_prompt  # noqa: E402
from satori_cli.train.recipe import resolve_recipe  # noqa: E402
from satori_cli.train.rundata import sft_row  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a checkpoint folder (satori tiny-model)")
    parser.add_argument("--data", type=Path, required=True, help="prepared rows (satori data prepare)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=25, help="measure the gap every N steps")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--held-out", type=int, default=32, help="rows kept back from the end of --data")
    parser.add_argument("--lr", type=float, default=5e-3, help="the learn preset's SFT rate")
    parser.add_argument("--vision-lr", type=float, help="vision tower and merger (0 freezes them)")
    parser.add_argument("--no-system", action="store_true", help="leave out the system prompt")
    args = parser.parse_args(argv)

    import json

    import torch
    from PIL import Image
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    rng = random.Random(0)
    budget = resolve_recipe("learn").budget
    processor = AutoProcessor.from_pretrained(
        args.model, min_pixels=budget.min_pixels, max_pixels=budget.max_pixels
    )
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32)
    system = (
        [] if args.no_system else [{"role": "system", "content": [{"type": "text", "text": load_prompt()}]}]
    )
    rows = [sft_row(json.loads(line), budget) for line in args.data.read_text().splitlines() if line.strip()]
    if len(rows) <= args.held_out:
        raise SystemExit(f"--data has {len(rows)} rows; it needs more than --held-out ({args.held_out})")
    train, held = rows[: -args.held_out], rows[-args.held_out :]

    def encode(batch: list[dict], blank: bool = False):
        prompts, texts, images = [], [], []
        for row in batch:
            question = row["messages"][0]["content"].replace("<image>", "")
            user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
            prompt = processor.apply_chat_template(
                [*system, user], add_generation_prompt=True, tokenize=False
            )
            with Image.open(row["images"][0]) as img:
                image = Image.new("RGB", img.size, (255, 255, 255)) if blank else img.convert("RGB")
            prompts.append(prompt)
            texts.append(prompt + row["messages"][-1]["content"] + "<|im_end|>\n")
            images.append(image)
        kw = {"images": images, "return_tensors": "pt", "padding": True, "padding_side": "right"}
        full, prompt_only = processor(text=texts, **kw), processor(text=prompts, **kw)
        labels = full["input_ids"].clone()
        labels[full["attention_mask"] == 0] = -100
        for i, n in enumerate(prompt_only["attention_mask"].sum(1).tolist()):
            labels[i, :n] = -100  # the loss is on the completion only
        return full, labels

    def loss_of(inputs, labels):
        hidden = model.model(**inputs).last_hidden_state[:, :-1]
        target = labels[:, 1:]
        keep = target != -100
        return torch.nn.functional.cross_entropy(model.lm_head(hidden[keep]), target[keep])

    vision = [p for n, p in model.named_parameters() if ".visual." in f".{n}"]
    rest = [p for n, p in model.named_parameters() if ".visual." not in f".{n}"]
    vision_lr = args.lr if args.vision_lr is None else args.vision_lr
    groups = [{"params": rest, "lr": args.lr}, {"params": vision, "lr": vision_lr}]
    optimizer = torch.optim.AdamW(groups, weight_decay=0.1, betas=(0.9, 0.95))
    peaks = [g["lr"] for g in optimizer.param_groups]
    held_real, held_blank = encode(held), encode(held, blank=True)
    warmup = max(1, args.steps // 20)
    order: list[int] = []
    for step in range(1, args.steps + 1):
        if len(order) < args.batch:
            order += rng.sample(range(len(train)), len(train))
        batch, order = [train[i] for i in order[: args.batch]], order[args.batch :]
        progress = max(0, step - warmup) / max(1, args.steps - warmup)
        scale = min(1.0, step / warmup) * 0.5 * (1 + math.cos(math.pi * progress))
        for group, peak in zip(optimizer.param_groups, peaks, strict=True):
            group["lr"] = peak * scale
        loss = loss_of(*encode(batch))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % args.every == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                real, blank = loss_of(*held_real).item(), loss_of(*held_blank).item()
            model.train()
            print(
                f"step {step}: train loss {loss.item():.4f}; held-out loss {real:.4f}, "
                f"with blank images {blank:.4f}, vision gap {blank - real:+.4f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
