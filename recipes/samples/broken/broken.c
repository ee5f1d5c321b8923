/* Fails to compile on purpose (an undeclared identifier), so that coverage shows a failure cell. */
int main(void) {
    return undeclared_variable + 1;
}
