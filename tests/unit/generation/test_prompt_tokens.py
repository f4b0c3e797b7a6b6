"""One BOS, whichever backend sends a chat prompt; the official script's two when asked for.

Llama-3's chat template writes BOS and its tokenizer adds another to text it encodes with special tokens,
so a prompt rendered to text and sent to a completions route would start with two. The embedded model is
made to tokenize that way here (SmolLM2's template begins with `<|im_start|>`, its BOS; the tokenizer and
the GGUF are told to add it), and the same Llama-recipe prompt goes through the in-process backend and a
real llama.cpp server."""

import shutil

import httpx
import pytest
from gguf import GGUFReader

from medssr_hub.answers import answer_prompt
from medssr_hub.generation import SamplingParams
from medssr_hub.generation.base import encode_prompt, render_chat
from medssr_hub.generation.embedded import EmbeddedBackend
from medssr_hub.generation.endpoint import EndpointBackend
from medssr_hub.modeling import load_tokenizer
from medssr_hub.records import load_records
from tests.support.fault_proxy import FaultProxy
from tests.support.servers import LlamaServer

pytestmark = pytest.mark.server


@pytest.fixture
def llama3_like(embedded_dir, gguf_path, tmp_path):
    """The embedded model's folder and GGUF, each set to put BOS in front of what it encodes."""
    from transformers import AutoTokenizer

    folder = tmp_path / "model"
    folder.mkdir()
    # As Llama-3 ships it: BOS in tokenizer.json's post-processor.
    AutoTokenizer.from_pretrained(embedded_dir, add_bos_token=True).save_pretrained(folder)
    for f in embedded_dir.iterdir():
        if not (folder / f.name).exists():
            (folder / f.name).symlink_to(f)
    gguf = tmp_path / "model.gguf"
    shutil.copyfile(gguf_path, gguf)
    reader = GGUFReader(gguf, "r+")  # a bool keeps its size: written in place, as gguf's set-metadata does
    field = reader.fields["tokenizer.ggml.add_bos_token"]
    field.parts[field.data[0]][0] = True
    reader.data.flush()  # a numpy memmap of the file
    return folder, gguf


def test_in_process_and_served_prompts_carry_the_same_bos(llama3_like, benchmarks_dir, tmp_path):
    folder, gguf = llama3_like
    tokenizer = load_tokenizer(str(folder))
    bos = tokenizer.bos_token_id
    records, _ = load_records(benchmarks_dir / "medqa.json")
    prompt = answer_prompt(records[0], chat=True)  # recipes/llama3.1-8b/evaluation.yaml: chat, completions
    # The hazard is real for this tokenizer: the rendered text, encoded with special tokens, starts BOS BOS.
    assert tokenizer(render_chat(tokenizer, prompt))["input_ids"][:2] == [bos, bos]
    ours = encode_prompt(tokenizer, prompt)
    script = encode_prompt(tokenizer, prompt, script_bos=True)
    assert ours[0] == bos and ours[1] != bos
    assert script == [bos, *ours]

    server = LlamaServer(gguf, tmp_path)
    proxy = FaultProxy(server.url)
    embedded = EmbeddedBackend(model=str(folder), batch_size=1)
    try:
        endpoint = EndpointBackend(proxy.url, route="completions", tokenizer=str(folder), max_retries=0)
        for script_bos, expected in ((False, ours), (True, script)):
            params = SamplingParams(temperature=0.0, max_tokens=1, script_bos=script_bos)
            proxy.bodies.clear()
            served = endpoint.generate([prompt], params, progress=False)[0]
            local = embedded.generate([prompt], params, progress=False)[0]
            # The server's own ids for the text the route sent, and the count it reports having read.
            sent = proxy.bodies[0]["prompt"]
            server_ids = httpx.post(f"{server.url}/extras/tokenize", json={"input": sent}, timeout=30).json()
            assert server_ids["tokens"] == expected, script_bos
            assert served.prompt_tokens == local.prompt_tokens == len(expected), script_bos
    finally:
        embedded.close()
        proxy.close()
        server.stop()
