"""The core life cycle: newcomers, cases, steps, handoffs, consent, the advance, the sweep."""
