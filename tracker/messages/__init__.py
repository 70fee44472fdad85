"""Every message and letter: the outbox, rendering, senders, delivery, digests and PDFs."""
