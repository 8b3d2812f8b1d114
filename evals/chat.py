"""Render a sample's official user message through a model's chat template, whole (full-cache
runs) or cut at the end of the document (the engine's query-aware protocol). See ``evals.sample``.

The tokenizer is any object with transformers' ``apply_chat_template``; nothing here imports
transformers or torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evals.errors import EvalError
from evals.sample import PromptParts


@dataclass(frozen=True)
class EngineTexts:
    """The chat-templated prompt cut where the document ends.

    Attributes:
        context_text: chat prefix (BOS, system turn, user header) + message up to the document end.
        question_text: rest of the message + end of turn + the assistant generation prompt.
        generation_prompt: the end of ``question_text`` after the message (end of turn +
            generation prompt + the sample's answer prefix, if any), which kvpress's query-aware
            runs leave outside the compression.
        message_start: where the message's first character would sit in ``context_text``: its
            character ``i`` (not trimmed by the template) is ``context_text[message_start + i]``
            (how an answer span of ``PromptParts.context`` is found in the prompt).
    """

    context_text: str
    question_text: str
    generation_prompt: str = ""
    message_start: int = 0

    @property
    def full_prompt(self) -> str:
        """The whole chat-templated prompt (what a full-cache run feeds the model)."""
        return self.context_text + self.question_text


def render_chat(tokenizer: Any, message: str, system_prompt: str | None = None) -> str:
    """``message`` as one user turn (after an optional system turn) plus the generation prompt."""
    turns = [{"role": "system", "content": system_prompt}] if system_prompt else []
    turns.append({"role": "user", "content": message})
    return str(tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True))


def engine_texts(tokenizer: Any, parts: PromptParts, system_prompt: str | None = None) -> EngineTexts:
    """Cut the chat-templated prompt of ``parts.message`` where ``parts.context`` ends.

    Chat templates that trim the message (Llama 3's does) are handled: the cut stays at the same
    place in the message.

    Raises:
        EvalError: the template rewrites the message beyond trimming, so it cannot be cut.
    """
    rendered = render_chat(tokenizer, parts.message, system_prompt)
    message = parts.message
    core = message.strip()
    start = rendered.find(core) if core else rendered.find(message)
    if start < 0:
        raise EvalError(
            "the tokenizer's chat template rewrites the user message, so the prompt cannot be cut "
            "at the end of the document; use a full-cache run or a template that keeps the message"
        )
    leading = len(message) - len(message.lstrip()) if core else 0
    cut = min(max(len(parts.context) - leading, 0), len(core))
    end = start + len(core)
    suffix = rendered[end:] + parts.answer_prefix
    return EngineTexts(rendered[:start] + core[:cut], core[cut:] + suffix, suffix, start - leading)
