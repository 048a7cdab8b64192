"""What every memlake service uses: settings, storage, change log, cache, server bootstrap."""
