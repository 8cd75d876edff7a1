"""Fine-tuning: LoRA adapters trained on chats, prompt/completion pairs or a labelled task file, and
synthetic training data.

    data.py      a training file -> conversations (chat JSONL, prompt/completion, labelled + task); split
    encode.py    a conversation -> token ids and labels, loss on the assistant's tokens only
    trainer.py   the LoRA loop (peft + torch): batches, held-out loss, early stopping, checkpoints
    run.py       ``tune()``: a run kind in the store (epochs as units), resume, the curve, re-opening
    proof.py     ``prove()``: base against tuned on held-out rows and a second task (McNemar), KL drift
    kfold.py     ``kfold()``: K adapters, each tested on its own fold; the cross-validated accuracy
    export.py    ``merge()`` and ``export()``: a standalone model, or GGUF through llama.cpp's converter
    converter.py llama.cpp's converter scripts, fetched once from llama-cpp-python's source package
    synthetic.py ``generate_data()``: labelled texts written by a model, filtered (``filters.py``),
                 de-duplicated, with provenance (``llmlab generate-data``)

An adapter loads on its base model as ``hf/BASE+ADAPTER_DIR`` (``models/adapters.py`` checks it was
made for that base), in every command.
Nothing here is imported by ``llmlab --help``; torch and peft load inside the functions that train.
"""

from .run import TuneResult, tune
from .trainer import Settings

__all__ = ["Settings", "TuneResult", "tune"]
