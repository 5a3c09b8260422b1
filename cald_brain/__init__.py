"""cald-brain: convert pretrained transformers into linear-time models while
fine-tuning them, with Cross-Architecture Layerwise Distillation (CALD).

Reference
---------
He & Garner, "Joint Fine-tuning and Conversion of Pretrained Speech and
Language Models towards Linear Complexity", ICLR 2025 (arXiv 2410.06846).
"""

__version__ = "0.1.0"
