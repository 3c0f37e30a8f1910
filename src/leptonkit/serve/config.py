"""Everything ``leptonkit serve`` can be told, as one pydantic model (the CLI flags map onto these fields)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(default_factory=list, description="Registry references or Hugging Face folders.")
    services: list[str] = Field(default_factory=list, description="Custom Python services, FILE.py:CLASS each.")
    adapters: dict[str, str] = Field(default_factory=dict, description="Adapter name -> registry reference.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    home: str | None = Field(None, description="LEPTONKIT_HOME of the registry; default from the environment.")
    engine: Literal["auto", "native", "vllm"] = "auto"
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs each layer of a vLLM model is split across.")
    pipeline_parallel_size: int = Field(1, ge=1, description="GPU groups a vLLM model's layers are split into.")
    max_num_seqs: int = Field(64, ge=1, description="Sequences decoded together per step.")
    max_queue: int = Field(256, ge=0, description="Sequences (prompts x n) waiting per model; beyond it 429.")
    max_batched_tokens: int = Field(2048, ge=1, description="Token budget of one step (prefill plus decode).")
    max_adapters: int = Field(8, ge=1, description="LoRA adapters loaded at once; least recently used evicted.")
    request_timeout: float = Field(600.0, gt=0, description="Seconds before a request answers 504.")
    grace_period: float = Field(30.0, ge=0, description="Seconds SIGTERM waits for in-flight requests.")
    encoder_max_batch: int = Field(32, ge=1, description="Inputs per encoder forward.")
    encoder_max_wait_ms: float = Field(5.0, ge=0, description="How long an encoder batch waits to fill.")
    compile: bool = Field(
        False, description="Compile Llama-family decode steps with torch.compile before serving (tens of seconds)."
    )
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads of each engine (default: torch's); other threads use one."
    )
    explain_steps: int = Field(32, ge=1, le=1024, description="Integration steps per explanation (explain: true).")
    # Operations (read by leptonkit.serve.middleware, authentication and safety; CLI flags of the same names).
    auth: Literal["on", "off"] | None = Field(None, description="API keys required; unset: on unless on loopback.")
    metrics_public: bool = Field(False, description="Serve /metrics without an API key.")
    log_content: bool = Field(False, description="Log prompts and outputs, PII-redacted.")
    audit_log: str | None = Field(None, description="Audit log JSON lines file; default LEPTONKIT_HOME/audit.log.")
    max_body_bytes: int = Field(1_048_576, ge=1, description="Largest request body; beyond it 413.")
    max_tokens_cap: int | None = Field(None, ge=1, description="Largest max_tokens a request may ask for.")
    max_prompt_tokens: int | None = Field(None, ge=1, description="Longest prompt in tokens; beyond it 400.")
    rate_limit_rpm: int | None = Field(None, ge=1, description="Requests per minute per API key.")
    rate_limit_tpm: int | None = Field(None, ge=1, description="Prompt plus generated tokens per minute per key.")
    max_streams_per_key: int | None = Field(None, ge=1, description="Concurrent streaming responses per key.")
    header_timeout: float = Field(10.0, gt=0, description="Seconds a connection may take to send a request's headers.")
    keep_alive_timeout: int = Field(5, ge=1, description="Seconds an idle kept-alive connection stays open.")
    ssl_certfile: str | None = Field(None, description="TLS certificate (PEM); serve HTTPS with ssl_keyfile.")
    ssl_keyfile: str | None = Field(None, description="TLS private key (PEM).")
    safety_redact_pii: bool = Field(False, description="Mask personal data in generated text.")
    safety_blocklist: list[str] = Field(default_factory=list, description="Regexes that block input or output.")
    safety_classifier: str | None = Field(None, description="Registry classifier that flags unsafe text.")
    safety_unsafe_labels: list[str] = Field(["unsafe", "toxic"], description="Classifier labels meaning unsafe.")
    safety_threshold: float = Field(0.5, ge=0, le=1, description="Classifier score that flags a text.")

    @model_validator(mode="after")
    def _something_to_serve(self) -> ServeConfig:
        if not self.models and not self.services:
            raise ValueError("nothing to serve: give a model reference or a service (FILE.py:CLASS)")
        return self
