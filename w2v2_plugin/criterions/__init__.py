"""Importing this subpackage registers its contents with fairseq."""
