"""How a (context, question) pair becomes token ids for the engine (reference section 1.1).

The context is tokenised without special tokens (no BOS); the question is the chat-templated
single user turn with the generation prompt, so it carries the template's BOS and headers.
Benchmarks that prompt the whole sample as one chat message give both parts already rendered
(``evals.chat.engine_texts``); ``encode_text`` tokenises them as they are.
"""

from __future__ import annotations

from typing import Any


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` as it is: no special tokens added; special-token strings written in
    the text (a chat template's BOS and headers) become their ids."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_context(tokenizer: Any, context: str) -> list[int]:
    """Context token ids, no special tokens added."""
    return encode_text(tokenizer, context)


def encode_question(tokenizer: Any, question: str) -> list[int]:
    """The question as one chat-templated user turn plus the assistant generation prompt."""
    messages = [{"role": "user", "content": question}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
