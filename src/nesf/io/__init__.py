"""Atomic writers for CIF, extxyz and JSON."""
