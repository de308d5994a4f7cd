from services.common.runtime import run
from services.routing.bootstrap import bootstrap

if __name__ == "__main__":
    run("routing", bootstrap)
