"""The learner side: the maths of an RL update and the actor that runs it. Advantages
(advantages.py, called by the driver when it builds samples), train samples and token-budget
micro-batches (batching.py), policy losses by name (losses.py), the FP32 chunked LM head
(logprobs.py, policy.py), and ``LearnerWorker`` (worker.py), one rank of the FSDP2 group.
Nothing here knows about the driver loop, Ray placement or the engines; the weight senders the
worker calls are in rlhf/weight_sync.py."""
