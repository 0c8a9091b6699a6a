"""snds_assets: reception, verification and provision of the SNDS main base, as a Dagster code location."""
import os

# gRPC's C core prints its INFO lines on stderr (the Spark Connect probe's refused TLS handshake: "I1202 …
# ssl_transport_security.cc … Handshake failed") unless told otherwise, and reads this when grpc is first imported.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
