"""An ECG-Bench plug-in distribution: an encoder, a condition and a source, one module each."""
