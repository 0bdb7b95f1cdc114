"""The reader's review: a local server and page to confirm, reject or add CMBs."""
