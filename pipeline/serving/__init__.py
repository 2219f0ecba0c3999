"""Online prediction: `mnistkit serve` (an HTTP server over the exported model) and its drawing page."""
