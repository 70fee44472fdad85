"""Data protection: the Art. 15 export, the access log, Art. 17 erasure and retention."""
