"""Learners shared by the offloading controllers: replay buffers, networks, DDPG and MADDPG
(centralised critics, decentralised actors).  torch on the CPU, one thread."""
