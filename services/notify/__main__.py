from services.common.runtime import run
from services.notify.bootstrap import bootstrap

if __name__ == "__main__":
    run("notify", bootstrap)
