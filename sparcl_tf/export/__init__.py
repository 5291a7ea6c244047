"""Export of trained models to TFLite with on-device training signatures."""
