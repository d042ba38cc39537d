"""gansearch: joint multi-objective search for compressed GAN generators."""

from __future__ import annotations

__version__ = "0.1.0"
