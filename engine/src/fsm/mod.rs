//! The glommio shell: runs a store's shards on pinned executors.
