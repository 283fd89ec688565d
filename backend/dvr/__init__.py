"""DVR: recordings and recurring rules kept in TIC, recorded by TVHeadend, played back as HLS."""
