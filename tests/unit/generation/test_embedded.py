import pytest
import torch

from medssr_hub.generation import SamplingParams
from medssr_hub.generation.embedded import EmbeddedBackend

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Name one symptom of type 2 diabetes and explain it."}],
    [{"role": "user", "content": "Hi"}],
]


def test_greedy_matches_plain_generate(embedded_backend):
    """Batching, left padding and the shared prefill change nothing: greedy equals one plain generate()."""
    params = SamplingParams(n=1, temperature=0, max_tokens=24)
    batched = embedded_backend.generate(CHATS, params, progress=False)
    model, tok = embedded_backend.model, embedded_backend.tokenizer
    for chat, completion in zip(CHATS, batched, strict=True):
        ids = torch.tensor([embedded_backend.encode(chat)])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False)
        expected = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        assert completion.samples[0].text == expected
        assert completion.prompt_tokens == ids.shape[1]


def test_samples_are_seeded_per_prompt_not_per_batch(embedded_backend):
    params = SamplingParams(n=4, max_tokens=16, seed=7)
    together = embedded_backend.generate(CHATS, params, seeds=[11, 12, 13], progress=False)
    alone = embedded_backend.generate(CHATS[1:2], params, seeds=[12], progress=False)
    assert alone[0].texts == together[1].texts
    # n larger than the batch splits a prompt over several calls, with the same samples.
    small = EmbeddedBackend(
        model_and_tokenizer=(embedded_backend.model, embedded_backend.tokenizer), batch_size=3
    )
    assert small.generate(CHATS[1:2], params, seeds=[12], progress=False)[0].texts == together[1].texts
    # The four samples differ from each other (sampling, not four copies of one draw).
    assert len(set(together[1].texts)) > 1
    other_seed = embedded_backend.generate(CHATS[1:2], params, seeds=[99], progress=False)
    assert other_seed[0].texts != together[1].texts


def test_finish_reasons_token_counts_and_callbacks(embedded_backend):
    seen = []
    params = SamplingParams(n=2, max_tokens=6)
    out = embedded_backend.generate(CHATS, params, on_complete=lambda i, c: seen.append(i), progress=False)
    assert sorted(seen) == [0, 1, 2]
    long_answer = out[1].samples
    assert all(s.finish_reason == "length" and s.completion_tokens == 6 for s in long_answer)
    short = embedded_backend.generate(CHATS[:1], SamplingParams(temperature=0, max_tokens=64), progress=False)
    sample = short[0].samples[0]
    assert sample.finish_reason == "stop" and 0 < sample.completion_tokens < 64 and "Paris" in sample.text
    ids = embedded_backend.tokenizer(sample.text, add_special_tokens=False)["input_ids"]
    assert abs(len(ids) - sample.completion_tokens) <= 1


def test_stop_strings_cut_the_text(embedded_backend):
    out = embedded_backend.generate(
        CHATS[:1], SamplingParams(temperature=0, max_tokens=64, stop=("Paris",)), progress=False
    )
    sample = out[0].samples[0]
    assert "Paris" not in sample.text and sample.finish_reason == "stop"


def test_allowed_tokens_constrain_the_answer(embedded_backend):
    chat = [
        {"role": "user", "content": "Which is a fruit?\nA. Car\nB. Apple\nC. Rock"},
        {"role": "assistant", "content": "The answer is"},
    ]
    params = SamplingParams(temperature=0, max_tokens=1, allowed_tokens=("A", "B", "C"))
    out = embedded_backend.generate([chat], params, progress=False)
    assert out[0].samples[0].text.strip() in {"A", "B", "C"}
    # Sampling too stays inside the allowed set.
    sampled = embedded_backend.generate(
        [chat], SamplingParams(n=6, max_tokens=1, allowed_tokens=("A", "B", "C")), progress=False
    )
    assert {s.text.strip() for s in sampled[0].samples} <= {"A", "B", "C"}


def test_raw_prompts_and_invalid_params(embedded_backend):
    out = embedded_backend.generate(
        ["The capital of France is"], SamplingParams(temperature=0, max_tokens=4), progress=False
    )
    assert out[0].samples[0].text.strip()
    with pytest.raises(ValueError, match="n must be"):
        SamplingParams(n=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError, match="seeds"):
        embedded_backend.generate(CHATS, SamplingParams(max_tokens=2), seeds=[1], progress=False)


def test_layout_states_with_the_real_tokenizer(embedded_backend):
    processor = embedded_backend.layout_processor
    pieces = processor.pieces
    stem = "A 40-year-old man has chest pain radiating to the left arm. What is the diagnosis?"
    assert processor.allowed(stem) == ("stem", None)
    state, ids = processor.allowed(stem + "\n")
    assert (
        state == "label"
        and {pieces[i] for i in ids} >= {"A"}
        and all("A. ".startswith(pieces[i]) or pieces[i].startswith("A. ") for i in ids)
    )
    assert processor.allowed(stem + "\nA. Angina") == ("option", None)
    four = stem + "\nA. a\nB. b\nC. c\nD. d\n"
    state, ids = processor.allowed(four)  # E. or Answer: may come now
    assert (
        state == "label"
        and any(pieces[i].startswith("E") for i in ids)
        and any("Answer".startswith(pieces[i]) for i in ids if pieces[i])
    )
    state, ids = processor.allowed(four + "Answer:")
    assert state == "answer" and {pieces[i].strip() for i in ids} == set("ABCD")
    assert processor.allowed(four + "Answer: C") == ("done", processor.eos_ids)


def test_layout_constrained_generation_has_options_and_answer(embedded_backend):
    prompt = [
        {
            "role": "user",
            "content": "Write one multiple-choice question about asthma with options A-D and the answer.",
        },
        {"role": "assistant", "content": "Question:"},
    ]
    params = SamplingParams(n=3, max_tokens=160, seed=3, layout=True)
    for sample in embedded_backend.generate([prompt], params, progress=False)[0].samples:
        lines = sample.text.strip().split("\n")
        if len(lines) > 1:  # the stem ended within the budget: every later line follows the layout
            labels = [line[:3] for line in lines[1:] if line]
            assert all(label in {"A. ", "B. ", "C. ", "D. ", "E. ", "Ans"} for label in labels), sample.text
            assert [lab for lab in labels if lab != "Ans"] == ["A. ", "B. ", "C. ", "D. ", "E. "][
                : len([lab for lab in labels if lab != "Ans"])
            ]
            if sample.finish_reason == "stop":
                assert lines[-1].startswith("Answer:") and lines[-1].split(":")[1].strip() in "ABCDE"


def test_on_device_sampling_draws_the_same_distribution_per_row_seed_without_a_host_loop():
    """The GPU's way to draw (one vectorised inverse-CDF pick from a counter-based hash of seed and step),
    checked on CPU: the frequencies match the top-k/top-p distribution, a top-p-cut token is never drawn,
    and a row's draw depends on its seed alone, not on the rows beside it."""
    from medssr_hub.generation.embedded import PerRowSampler

    probs = torch.tensor([0.5, 0.25, 0.15, 0.07, 0.03])
    scores = torch.log(probs).repeat(6000, 1)
    params = SamplingParams(temperature=1.0, top_k=0, top_p=0.95)  # keeps the first four (0.97)
    seeds = list(range(10_000, 16_000))
    picks = PerRowSampler(params, seeds, on_device=True)(None, scores).argmax(-1)
    freq = torch.bincount(picks, minlength=5).double() / len(seeds)
    kept = probs[:4] / probs[:4].sum()
    assert freq[4] == 0  # cut by top_p
    assert torch.allclose(freq[:4], kept.double(), atol=0.02), freq
    again = PerRowSampler(params, seeds[100:110], on_device=True)(None, scores[:10]).argmax(-1)
    assert torch.equal(again, picks[100:110])  # another batch, the same rows: the same draws
    second_step = PerRowSampler(params, seeds, on_device=True)
    second_step(None, scores)
    assert not torch.equal(second_step(None, scores).argmax(-1), picks)  # a new draw at every step


def test_on_device_sampling_in_the_backend_is_seeded_per_prompt(embedded_backend):
    device_way = EmbeddedBackend(
        model_and_tokenizer=(embedded_backend.model, embedded_backend.tokenizer), sample_on_device=True
    )
    params = SamplingParams(n=4, max_tokens=16, seed=7)
    together = device_way.generate(CHATS, params, seeds=[11, 12, 13], progress=False)
    alone = device_way.generate(CHATS[1:2], params, seeds=[12], progress=False)
    assert alone[0].texts == together[1].texts and len(set(together[1].texts)) > 1


def test_min_tokens_keeps_an_end_of_sequence_from_ending_the_first_token(embedded_backend):
    """The official recovery pass's `min_tokens=1`: even with the end-of-sequence token pushed to the top,
    the sample has a first token; without it the sample is empty."""
    from medssr_hub.answers import Extraction, extract_or_recover
    from medssr_hub.records import MCQRecord

    eos = tuple(embedded_backend.eos_ids)
    pushed = dict(n=1, temperature=0.0, max_tokens=2, bias_ids=eos)
    prompt = [{"role": "user", "content": "Which letter? A. x B. y"}]
    assert embedded_backend.generate([prompt], SamplingParams(**pushed), progress=False)[0].texts == [""]
    (kept,) = embedded_backend.generate([prompt], SamplingParams(**pushed, min_tokens=1), progress=False)
    assert kept.samples[0].completion_tokens >= 1 and kept.texts[0] != ""
    with pytest.raises(ValueError, match="min_tokens"):
        SamplingParams(max_tokens=2, min_tokens=3)

    seen = []

    class Recording:  # the real backend, its sampling settings recorded
        tokenizer = embedded_backend.tokenizer

        def generate(self, prompts, params, **kw):
            seen.append(params)
            return embedded_backend.generate(prompts, params, **kw)

    record = MCQRecord(id="q", question="Which?", options={"A": "x", "B": "y"}, answer="A")
    extract_or_recover(
        [record], [["no letter here"]], Recording(), chat=True, extraction=Extraction("official")
    )
    assert [p.min_tokens for p in seen] == [1]  # as the script's recovery pass (vllm_logitsbias_multi.py:217)
