"""Encoding a crystal: refining its latent code on its own field, and checking the code by decoding it.

:mod:`nesf.encoding.refine` improves an encoded code with a few gradient steps on the input's
exact field; :mod:`nesf.encoding.checked` decodes each refined code and refines it again while
its crystal's composition differs from the input's.
"""
