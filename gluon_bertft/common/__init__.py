"""Helpers every layer may use: errors, atomic storage, the one rule for outputs, file reading,
metrics, option values and the OpenMP thread set-up. Nothing here imports another part of the
package."""
