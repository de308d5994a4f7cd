from services.common.runtime import run
from services.sla.bootstrap import bootstrap

if __name__ == "__main__":
    run("sla", bootstrap)
