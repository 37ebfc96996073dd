"""The embedded demo provider: a sample release served by our own NNTP server.

With `demo.enabled`, `altmount serve` starts the project's fake NNTP server on
127.0.0.1, posts a generated WAV tone to it and imports the release, so a new
user can `curl -r`, `ffprobe` or mount something before they have a Usenet account.
"""

from __future__ import annotations

import io
import wave

import numpy as np

from altmount.config import DemoConfig, ProviderConfig
from altmount.testing.articles import Release, post_release

__all__ = ["DEMO_PROVIDER_NAME", "DEMO_RELEASE", "sample_wav", "demo_release", "demo_provider"]

DEMO_PROVIDER_NAME = "demo"
DEMO_RELEASE = "altmount-demo"
#: Small articles so that even the demo file spans many segments, as real posts do.
DEMO_ARTICLE_SIZE = 256 * 1024
_RATE = 44_100


def sample_wav(size_bytes: int, frequency: float = 440.0) -> bytes:
    """A 16-bit stereo 44.1 kHz sine tone WAV of about `size_bytes` bytes."""
    frames = max(_RATE // 10, (size_bytes - 44) // 4)
    t = np.arange(frames, dtype=np.float64) / _RATE
    left = np.sin(2 * np.pi * frequency * t)
    right = np.sin(2 * np.pi * frequency * 1.5 * t)
    samples = (np.stack([left, right], axis=1) * 0.3 * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(_RATE)
        wav.writeframes(samples.tobytes())
    return out.getvalue()


def demo_release(config: DemoConfig) -> Release:
    """The sample release: one WAV, posted as yEnc articles, with its NZB."""
    data = sample_wav(config.size_mb * 1024 * 1024)
    return post_release({"altmount-demo-tone.wav": data}, article_size=DEMO_ARTICLE_SIZE,
                        meta={"name": DEMO_RELEASE}, salt="altmount-demo")


def demo_provider(port: int) -> ProviderConfig:
    """The provider entry that points at the demo server."""
    return ProviderConfig(name=DEMO_PROVIDER_NAME, host="127.0.0.1", port=port, tls=False,
                          max_connections=8)
