"""Fine-tuning: LoRA SFT, merge and export, and synthetic training data (``synthetic.py``)."""
