"""Entry points for other evaluation frameworks (inspect_ai); the lm-eval task folder is integrations/lm_eval."""
