"""The reconstruction algorithm: particles follow a position field and cluster into atoms."""
