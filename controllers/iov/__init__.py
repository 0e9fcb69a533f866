"""Internet of Vehicles: DRDST sharded blockchain among vehicles and roadside units."""
