"""Reference log-mel spectrograms from librosa for the audio plugin's tests.

Writes, next to this script:
- `signal.wav`: 1.2 s at 16 kHz, 32-bit float: a 440 Hz tone, a chirp from 300 Hz
  to 6 kHz, and a click train, at different levels;
- `librosa.json`: librosa's log-mel of those samples, with the plugin's settings
  (n_fft = win_length = 400, hop 160, Hann, center=True with zero padding, 64 Slaney
  mels from 0 to 8 kHz with Slaney norm, power_to_db(ref=1, amin=1e-10,
  top_db=80)), band-major, band 0 the lowest; 121 frames.

    pip install librosa==0.10.2.post1 soundfile
    python plugins/audio/tests/reference/make_fixtures.py
"""

import json
import os

import librosa
import numpy as np
import soundfile

HERE = os.path.dirname(os.path.abspath(__file__))
RATE = 16000

t = np.arange(int(1.2 * RATE)) / RATE
tone = 0.3 * np.sin(2 * np.pi * 440 * t)
# Linear chirp 300 Hz -> 6 kHz over the clip.
f0, f1, length = 300.0, 6000.0, t[-1]
chirp = 0.1 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * length)))
clicks = np.zeros_like(t)
clicks[:: RATE // 8] = 0.8
signal = (tone + chirp + clicks).astype(np.float32)
soundfile.write(os.path.join(HERE, "signal.wav"), signal, RATE, subtype="FLOAT")

# Read back what was written, as the test will.
samples, rate = soundfile.read(os.path.join(HERE, "signal.wav"), dtype="float32")
assert rate == RATE
power = librosa.feature.melspectrogram(
    y=samples, sr=RATE, n_fft=400, hop_length=160, win_length=400, window="hann",
    center=True, pad_mode="constant", power=2.0, n_mels=64, fmin=0.0, fmax=8000.0,
    htk=False, norm="slaney",
)
db = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=80.0)
with open(os.path.join(HERE, "librosa.json"), "w") as f:
    json.dump({"librosa": librosa.__version__, "mels": db.shape[0], "frames": db.shape[1],
               "db": [round(float(v), 4) for v in db.astype(np.float32).ravel()]}, f)
print("frames", db.shape[1], "range", float(db.min()), float(db.max()))
