"""Building the control plane: Go wrapper modules (`gomod/`), the versions they pin, cached builds."""
