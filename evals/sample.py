"""How the engine sees a benchmark sample.

Every dataset turns a sample into an ``EvalSample``: the official user message cut in two
where the document ends (``PromptParts``), the reference answer, the generation settings of the
official run and the dataset's breakdown fields. ``evals.chat`` renders the parts through a
model's chat template as

- **engine texts** for the query-aware protocol: ``context_text`` = chat prefix + the message up
  to the end of the document (prefilled block by block and compressed), ``question_text`` = the
  rest of the message + the generation prompt (appended to each scored block, then answered);
- the **full prompt** for full-cache runs: the whole chat-templated message.

``context_text + question_text == full prompt``, byte for byte (tested per dataset).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings of a benchmark's official run.

    Attributes:
        max_new_tokens: answer length limit.
        temperature: 0 = greedy; > 0 = sampling at that temperature (seeded by the runner).
    """

    max_new_tokens: int
    temperature: float = 0.0


@dataclass(frozen=True)
class PromptParts:
    """The official user message, cut where the document ends.

    Attributes:
        context: the message up to and including the document.
        question: the rest of the message (closing markup, question, answer format).
        answer_prefix: text that starts the assistant's answer, after the chat template's
            generation prompt (RULER's answer prefix); usually empty.
    """

    context: str
    question: str
    answer_prefix: str = ""

    @property
    def message(self) -> str:
        """The official user message, byte for byte."""
        return self.context + self.question


@dataclass(frozen=True)
class AnswerSpan:
    """Where one answer sits in the document: characters ``[start, end)`` of
    ``PromptParts.context`` (a needle's value, a marked fact), and the target it answers, written as
    the benchmark writes targets (a needle is found when the benchmark's metric gives the output
    full credit against this target alone).
    """

    start: int
    end: int
    target: str


@dataclass(frozen=True)
class EvalSample:
    """One benchmark sample, ready for the engine.

    Attributes:
        dataset: dataset name (``longbench_v2``, ``babilong``, ...).
        sample_id: unique within the dataset (LongBench ``_id``; BABILong ``<length>/<task>/<index>``).
        task: BABILong task (``qa1``...) or LongBench domain.
        length: BABILong length config (``4k``...) or LongBench length class.
        parts: the official user message, cut at the end of the document.
        target: the reference answer (LongBench: the letter; BABILong: the target string).
        generation: the official run's decoding settings.
        question: the question as the benchmark's metric reads it (BABILong's ``compare_answers``
            checks answers against it; LongBench v2 keeps it for the record; "" where there is none).
        fields: breakdown fields kept with every result (difficulty, sub_domain, a needle's depth, ...).
        revision: the data version of this sample's cell where it differs from the run's
            (``Benchmark.revision``), e.g. a RULER cell whose generator set-up changed; None: the
            run's. It goes into the unit id, so a changed cell never resumes into old rows.
        answers: where the answer sits in the document, one span per needle or fact, where the
            benchmark can find it (``Benchmark`` loaders fill it); empty: nothing to locate. Not
            part of the unit id (it is read from the same text).
    """

    dataset: str
    sample_id: str
    task: str
    length: str
    parts: PromptParts
    target: str
    generation: GenerationSettings
    question: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    revision: str | None = None
    answers: tuple[AnswerSpan, ...] = ()


def split_at_suffix(message: str, suffix: str, what: str) -> PromptParts:
    """Cut ``message`` before ``suffix`` (the part after the document).

    Raises:
        ValueError: ``message`` does not end with ``suffix`` (a bug in the caller's template).
    """
    if not message.endswith(suffix):
        raise ValueError(f"{what}: the prompt does not end with its question part {suffix[:60]!r}")
    return PromptParts(message[: len(message) - len(suffix)], suffix)
