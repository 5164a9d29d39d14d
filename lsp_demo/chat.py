"""Step 5: a short greedy conversation with the trained model."""

from __future__ import annotations

from pathlib import Path

from lsp_common.atomic import write_text_atomic
from lsp_demo.console import DemoError, shown


def sample_user_turns(valid: Path, n: int) -> list[tuple[str, str]]:
    """(last context turn, response) of the first ``n`` validation lines with distinct turns."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    with open(valid, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2 or not fields[0].strip():
                continue
            # The turn the response answers; earlier turns would not fit the running chat.
            user = fields[0].split(" EOS ")[-1].strip()
            if not user or user in seen:
                continue
            seen.add(user)
            out.append((user, fields[1]))
            if len(out) == n:
                break
    return out


def sample_conversation(run_dir: Path, valid: Path, out_path: Path, n_turns: int = 3) -> str:
    from lsp_data.tokenizer import TokenizerError, load_tokenizer
    from lsp_model.decoding import generate_reply
    from lsp_model.loading import ModelLoadError, load_model

    hf = run_dir / "hf_model"
    try:
        model = load_model(hf)
        tokenizer = load_tokenizer(hf)
    except (ModelLoadError, TokenizerError) as err:
        raise DemoError(f"cannot load the trained model: {err}") from None
    history: list[str] = []
    lines = [
        f"Sample conversation with {shown(hf)} (greedy decoding). The user turns come "
        f"from held-out conversations ({shown(valid)}); the bot sees the whole chat.",
        "",
    ]
    for user, reference in sample_user_turns(valid, n_turns):
        history.append(user)
        reply = generate_reply(model, tokenizer, history, max_new_tokens=30, method="greedy")
        history.append(reply)
        # An undertrained model often ends its turn at once; say so rather than print nothing.
        shown_reply = reply or "(empty: the model ended its turn at once)"
        lines += [
            f"USER: {user}",
            f"BOT:  {shown_reply}",
            f"      (answer in the held-out data: {reference})",
            "",
        ]
    text = "\n".join(lines)
    write_text_atomic(out_path, text)
    return text
