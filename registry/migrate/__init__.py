"""Migration of legacy procedures: readers, code generators, the zero-loss proof."""
