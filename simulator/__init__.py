"""Everything that lets the whole stack run on one machine: broker and gateway runners,
virtual devices on the real firmware, the platform stand-in, the virtual serial board, hcp-sim."""
